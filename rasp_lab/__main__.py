"""`python -m rasp_lab`: the same command line as `rasp-lab` (see rasp_lab/cli.py).

python -m rasp_lab list
python -m rasp_lab run sort 3 1 2
"""

import sys

from rasp_lab.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m rasp_lab"))
