"""The command line: one command, a module per mode.

    selfcorrect train FILE...          train the current adapter on these files, in order       cli/train.py
    selfcorrect daemon [--once]        watch inbox/ and queue/ and train (--once: what is queued) cli/daemon.py
    selfcorrect status                 where the daemon stands (safe while it runs)              cli/status.py
    selfcorrect report                 logs/report.png and logs/report.html                      cli/report.py
    selfcorrect rollback VERSION       move the training head back (the next file trains from it) cli/rollback.py
    selfcorrect eval FILE|TASK         answer a QA file or a task and report accuracy            cli/eval.py
    selfcorrect harness run|grid|summarize   the evaluation harness (baseline or ACE)            cli/harness.py
    selfcorrect practice FILE...       verified self-training                                    cli/practice.py
    selfcorrect analyze FILE           failure analysis                                          cli/analyze.py
    selfcorrect traces FILE            multi-pass correction traces, a learned reprompt policy   cli/traces.py
    selfcorrect serve                  the current adapter behind an OpenAI-compatible API       cli/serve.py
    selfcorrect codes|build|initial-answers|demo|rules   the self-correction steps by hand       cli/tools.py

`main.py` builds the parser from each module's `add_parser` and runs the chosen module's `run(args, ctx)` inside
a `Context` (context.py); options several commands share are declared once in options.py. `legacy.py` rewrites
the older flag forms (`python train.py --daemon`) into these commands. This package is the top layer: it imports
every other one and none imports it.
"""
