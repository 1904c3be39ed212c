def main(argv: list[str] | None = None) -> int:
    """Placeholder until the command-line interface lands."""
    return 0
