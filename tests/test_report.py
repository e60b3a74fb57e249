"""ntkit.tasks.report and ``ntkit report`` / ``--report``: review pages built with igv-reports,
igv.js inlined from the npm tarball (``ntkit data fetch igv-js``), checked in headless Chromium
with the network disabled (Debian's ``chromium`` + ``chromium-driver``, driven by selenium)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pysam
import pytest

from ntkit.cli import main
from ntkit.io.genome import write_fasta
from ntkit.models import spliceai
from ntkit.models.checkpoint import save_checkpoint
from ntkit.tasks import report
from ntkit.tasks.options import ReportOptions

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("NTKIT_TEST_ARTIFACTS", ROOT / "test-artifacts"))
CACHE = Path.home() / ".cache" / "ntkit"


@pytest.fixture(scope="module")
def igv_js():
    """igv.js from the npm registry, through the catalogue (checksummed), cached between runs."""
    try:
        return report.find_igv_js()
    except FileNotFoundError:
        pass
    from ntkit.io.datasets import Catalogue, fetch

    try:
        fetch(["igv-js"], CACHE, catalogue=Catalogue.load(), progress=False)
    except Exception as e:  # no network: the page cannot get its igv.js
        pytest.skip(f"igv.js could not be fetched from the npm registry ({type(e).__name__}: {e})")
    return report.find_igv_js()


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(2)
    seq = "".join(rng.choice(list("ACGT"), 4000))
    write_fasta(d / "g.fa", [("20", seq)])
    pysam.faidx(str(d / "g.fa"))
    (d / "genes.txt").write_text("#NAME\tCHROM\tSTRAND\tTX_START\tTX_END\tEXON_START\tEXON_END\n"
                                 "PLUSG\t20\t+\t100\t3900\t100,1000,\t800,3900,\nMINUSG\t20\t-\t500\t1500\t500,\t1500,\n")
    recs = [(700, "v700"), (900, "v900"), (1200, "v1200"), (2000, "v2000"), (3000, "v3000")]
    (d / "v.vcf").write_text("##fileformat=VCFv4.2\n##contig=<ID=20,length=4000>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                             + "".join(f"20\t{p}\t{i}\t{seq[p - 1]}\t{'A' if seq[p - 1] != 'A' else 'C'}\t.\t.\t.\n" for p, i in recs))
    save_checkpoint(spliceai.build("spliceai-tiny", seed=0), d / "sai")
    return d


def test_loci_are_the_highest_scores_and_a_vcf_reads_back(scored, tmp_path):
    d = scored
    assert main(["--quiet", "splice", "score-variants", "--splice-model", str(d / "sai"), "--vcf", str(d / "v.vcf"), "--fasta",
                 str(d / "g.fa"), "--annotation", str(d / "genes.txt"), "--out", str(tmp_path / "s.vcf.gz"),
                 str(tmp_path / "s.tsv")]) == 0
    from_vcf, table = report.read_scores(tmp_path / "s.vcf.gz"), report.read_scores(tmp_path / "s.tsv")
    cols = ["pos", "gene", "DS_AG", "DS_DL", "DP_AG"]
    # the VCF's two-decimal DS against the table's full values; the same rows, genes and offsets
    assert from_vcf[cols[:2]].equals(table[cols[:2]]) and np.allclose(from_vcf["DS_AG"], table["DS_AG"], atol=0.005)
    assert (from_vcf["DP_AG"] == table["DP_AG"]).all()
    top = report.select_loci(table, ReportOptions(max_loci=2))
    best = table.assign(m=table[[c for c in table if c.startswith("DS_")]].max(axis=1)).groupby("pos")["m"].max()
    assert list(top["pos"].drop_duplicates()) == list(best.sort_values(ascending=False).index[:2])
    assert report.select_loci(table, ReportOptions(max_loci=2, rank_by="DS_DL"))["pos"].iloc[0] == table.loc[table["DS_DL"].idxmax(), "pos"]


def test_missing_igv_js_is_one_line(scored, monkeypatch, tmp_path):
    monkeypatch.setattr(report, "data_dir", lambda: tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NTKIT_IGV_JS", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="ntkit data fetch igv-js"):
        report.find_igv_js()
    (tmp_path / "bad.tgz").write_bytes(b"not a tarball")
    with pytest.raises(ValueError, match="not the npm tarball expected"):
        report.igv_js_source(tmp_path / "bad.tgz")


@pytest.fixture(scope="module")
def page(scored, igv_js, tmp_path_factory):
    """A page from `splice score-variants --report` (SpliceAI's architecture, random weights)."""
    d, out = scored, tmp_path_factory.mktemp("page")
    assert main(["--quiet", "splice", "score-variants", "--splice-model", str(d / "sai"), "--vcf", str(d / "v.vcf"), "--fasta",
                 str(d / "g.fa"), "--annotation", str(d / "genes.txt"), "--out", str(out / "s.vcf.gz"), "--report",
                 str(out / "page.html"), "--max-loci", "4", "--igv-js", str(igv_js)]) == 0
    return out / "page.html"


def test_the_page_is_self_contained(page):
    text = page.read_text()
    assert "cdn.jsdelivr.net/npm/igv" not in text and "createBrowser" in text  # igv.js inlined, not fetched
    sessions = re.search(r"const sessionDictionary = (\{.*?\})\n", text, re.S)
    assert sessions, "no session dictionary"
    tracks = json.loads(sessions.group(1))
    assert len(tracks) == 4  # --max-loci
    assert all(v.startswith("data:") for v in tracks.values())  # every locus' data embedded


def chromium_paths() -> tuple[str, str] | None:
    b = shutil.which("chromium") or shutil.which("chromium-browser")
    d = shutil.which("chromedriver")
    return (b, d) if b and d else None


@pytest.mark.skipif(chromium_paths() is None, reason="Debian's chromium and chromium-driver are not installed "
                                                     "(scripts/setup.sh test installs them with apt-get where it can)")
def test_the_page_renders_offline_in_headless_chromium(page, scored):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the test extras)")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = chromium_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
              # the network is off: no proxy answers and no host name resolves
              "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        drv.get(page.as_uri())
        ready = "return typeof table !== 'undefined' && document.querySelectorAll('.tabulator-row').length > 0"
        WebDriverWait(drv, 60).until(lambda d: d.execute_script(ready))
        rows = drv.find_elements("css selector", ".tabulator-row")
        assert len(rows) == 4
        # the table filters: the gene column's header filter keeps the alleles of that gene
        genes = [r.find_element("css selector", ".tabulator-cell[tabulator-field='gene']").text for r in rows]
        gfilter = drv.find_element("css selector", ".tabulator-col[tabulator-field='gene'] input")
        gfilter.send_keys("MINUSG")
        WebDriverWait(drv, 10).until(lambda d: len(d.find_elements("css selector", ".tabulator-row")) == sum("MINUSG" in g for g in genes))
        gfilter.clear()
        gfilter.send_keys(" ")
        gfilter.clear()
        drv.execute_script("table.clearHeaderFilter()")
        WebDriverWait(drv, 10).until(lambda d: len(d.find_elements("css selector", ".tabulator-row")) == 4)
        target = drv.find_elements("css selector", ".tabulator-row")[2]
        pos = int(target.find_element("css selector", ".tabulator-cell[tabulator-field='POSITION']").text.replace(",", ""))
        target.click()
        locus = "const l = igvBrowser.currentLoci(); return Array.isArray(l) ? l[0] : l"  # a string for one locus

        def shows(d):
            loc = d.execute_script(locus)
            m = re.match(r"(\w+):([\d,]+)-([\d,]+)", loc or "")
            return m and int(m.group(2).replace(",", "")) <= pos <= int(m.group(3).replace(",", "")) and loc

        shown = WebDriverWait(drv, 30).until(shows)
        # igv.js draws inside a shadow root: the locus box and the track labels as a person sees them
        roots = "[document, ...Array.from(document.querySelectorAll('*')).filter(e => e.shadowRoot).map(e => e.shadowRoot)]"
        box = drv.execute_script(f"for (const r of {roots}) {{ const i = r.querySelector('.igv-search-input'); if (i) return i.value }} "
                                 "return null")
        assert box and box.replace(",", "") == shown.replace(",", ""), (box, shown)  # the locus box: the clicked variant's region
        drawn = drv.execute_script(f"return {roots}.flatMap(r => Array.from(r.querySelectorAll('.igv-track-label')))"
                                   ".map(e => e.textContent.trim())")
        assert {"variants", "genes", "acceptor REF", "acceptor ALT", "donor REF", "donor ALT"} <= set(drawn), drawn
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        drv.save_screenshot(str(ARTIFACTS / "report.png"))
        urls = [json.loads(e["message"])["message"].get("params", {}).get("request", {}).get("url", "")
                for e in drv.get_log("performance")]
        left = [u for u in urls if u and not u.startswith(("file:", "data:", "blob:", "about:"))]
        assert not left, left[:5]  # no request left the page
    finally:
        drv.quit()
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def test_report_on_mutagenesis_and_the_report_command(scored, igv_js, tmp_path):
    d = scored
    assert main(["--quiet", "mutagenesis", "--splice-model", str(d / "sai"), "--transcripts", str(d / "genes.txt"), "--fasta",
                 str(d / "g.fa"), "--regions", "20:1001-1010", "--out", str(tmp_path / "mut"), "--report", str(tmp_path / "m.html"),
                 "--max-loci", "5", "--igv-js", str(igv_js)]) == 0
    text = (tmp_path / "m.html").read_text()
    assert "DS_AG" in text and text.count("data:") >= 5
    assert main(["--quiet", "report", str(tmp_path / "mut" / "mutagenesis.parquet"), "--fasta", str(d / "g.fa"), "--out",
                 str(tmp_path / "r.html"), "--tracks", *map(str, sorted((tmp_path / "mut").glob("*.bedgraph"))[:2]), "--igv-js",
                 str(igv_js), "--max-loci", "3"]) == 0
    assert (tmp_path / "r.html").stat().st_size > 1_000_000
