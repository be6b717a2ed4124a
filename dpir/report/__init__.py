"""Tables, plots and the Markdown report, rendered from the results JSON files only."""
