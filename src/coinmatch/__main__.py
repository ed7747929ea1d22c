from coinmatch.cli import main

main()
