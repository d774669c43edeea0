from instore.cli import main

main()
