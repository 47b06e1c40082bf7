from skysweep.cli import main

main()
