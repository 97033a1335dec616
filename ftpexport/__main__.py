"""python -m ftpexport"""

from .cli import main

main()
