"""Reproduce a paper table: its rows as bundle runs over seeds, reported beside the published values."""

from monai_exudate.reproduction.report import markdown_table, write_reports
from monai_exudate.reproduction.rows import TableRow, published_values, table_rows
from monai_exudate.reproduction.runner import run_row, run_table

__all__ = ["TableRow", "markdown_table", "published_values", "run_row", "run_table", "table_rows", "write_reports"]
