from benchmarks.run import main

if __name__ == "__main__":  # the multiprocess executor's children import __main__ again
    raise SystemExit(main())
