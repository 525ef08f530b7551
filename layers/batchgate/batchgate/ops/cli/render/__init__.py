"""What the commands print: rich tables and text for people, JSON documents for scripts. One module per
command group; `text` holds what they share."""
