"""Everything a result is shown as: sheets, charts, tables, pages, and the console (rich lives here)."""
