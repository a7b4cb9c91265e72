"""The report in words: the summary reads as a table."""


def test_summary_reads_as_a_table(two_mode_report):
    text = two_mode_report.summary()
    assert "one_mode" in text and "missed_mode" in text and "expected" in text and "Flags:" in text
