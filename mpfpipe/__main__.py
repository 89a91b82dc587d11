"""``python -m mpfpipe`` is the ``mpfpipe`` command."""
from .cli import main

if __name__ == "__main__":
    main()
