from steper_bench.cli import main

main()
