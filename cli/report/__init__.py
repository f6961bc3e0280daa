"""`cotctl report`: a study as one self-contained HTML page (command.py), from what compare reads (gather.py),
drawn with matplotlib (charts.py) and laid out as an element tree (page.py)."""
