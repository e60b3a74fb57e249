import numpy as np

from ntkit.core.sequence import base_codes, one_hot, reverse_complement


def test_reverse_complement_keeps_case_and_other_letters():
    assert reverse_complement("AACGTN") == "NACGTT"
    assert reverse_complement("acgtRn") == "nRacgt"


def test_base_codes_in_both_orders():
    np.testing.assert_array_equal(base_codes("ACGTNacgt-"), [0, 1, 2, 3, -1, 0, 1, 2, 3, -1])
    np.testing.assert_array_equal(base_codes("ATCGn", "ATCG"), [0, 1, 2, 3, -1])
    np.testing.assert_array_equal(one_hot("AGN"), [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
