from pidmap.cli import main

main()
