from clarity_fast.cli import main

main()
