from aeff.app import main

main()
