from schedcmp.cli import main

main()
