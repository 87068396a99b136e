from sniffd.cli import entry

entry()
