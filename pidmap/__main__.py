from pidmap.cli import main

main(prog_name="pidmap")
