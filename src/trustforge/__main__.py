"""`python -m trustforge ...`: the same command line as the `trustforge` script."""

from trustforge.cli import main

if __name__ == "__main__":
    main()
