"""``ntkit data fetch``: the public files of the catalogue, downloaded and verified; ``ntkit data path``."""

from __future__ import annotations


def register(sub) -> None:
    d = sub.add_parser("data", help="data: download the public files the recipes use; where the demo data is")
    dsub = d.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("fetch", help="download catalogue entries or groups (checksums verified, resumable, atomic)")
    s.add_argument("names", nargs="*", help="entries or groups (e.g. demo, grch38-primary, nt-tasks-revised, hg38-chr20)")
    s.add_argument("--dest", default="ntkit-data", help="destination folder (point NTKIT_DATA or --data at it afterwards)")
    s.add_argument("--list", action="store_true", help="show the catalogue: groups, entries, sizes, how each is verified")
    s.add_argument("--mirror", help="fetch from a mirror instead: a folder or URL holding <host>/<path> of each URL")
    s.add_argument("--force", action="store_true", help="download again files that are already in place")
    s.add_argument("--catalogue", help="a catalogue YAML of your own (default: the one shipped with ntkit)")
    s.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    s.set_defaults(func=fetch)
    s = dsub.add_parser("path", help="print the data folder the defaults use ($NTKIT_DATA, else the shipped demo data)")
    s.set_defaults(func=path)


def fetch(args) -> int:
    import os

    from ntkit.io.datasets import Catalogue
    from ntkit.io.datasets import fetch as fetch_files

    cat = Catalogue.load(args.catalogue) if args.catalogue else Catalogue.load()
    if args.list or not args.names:
        print(cat.table())
        if not args.list:
            print("\nname entries or groups to fetch them: ntkit data fetch demo --dest DIR")
        return 0
    res = fetch_files(args.names, args.dest, mirror=args.mirror or os.environ.get("NTKIT_DATA_MIRROR"), force=args.force,
                      progress=args.progress, catalogue=cat)
    new = sum(r["status"] == "fetched" for r in res)
    print(f"{len(res)} file(s) in {args.dest} ({new} downloaded, {len(res) - new} already there); "
          f"use them with: export NTKIT_DATA={os.path.abspath(args.dest)}")
    return 0


def path(args) -> int:
    from ntkit.io.datasets import data_dir

    print(data_dir())  # the path alone, for scripts: D=$(ntkit data path)
    return 0
