"""What the report says and how it is shown: the rows and the recommendation (`tables`),
markdown and the console (`text`), report.html (`html`), plots, ship-it snippets and the
comparison of two runs. Only `stages/report.py` writes a report; nothing here imports it."""
