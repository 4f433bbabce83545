"""``python -m hodei``: the CLI."""

from hodei.cli.main import main

if __name__ == "__main__":
    main()
