"""``python -m hangar``: the hangar command line."""

from hangar.cli import main

if __name__ == "__main__":
    main()
