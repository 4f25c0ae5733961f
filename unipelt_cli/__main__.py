from unipelt_cli.cli import main

main()
