from poolgate.cli import main

main()
