"""Part of qloop's internals; see CONTRIBUTING.md, "The layout"."""
