"""The editor's knowledge panel: the documents an agent answers from."""
