"""The open multitrack corpus: music21 scores rendered part by part with FluidSynth.

Real harmony and real sampled timbres, labelled with General MIDI's family -> program hierarchy,
written in MoisesDB's layout so the MoisesDB reader loads it. See docs/corpus.md; build it with
`python -m stemserver_training.corpus build OUT` (stemserver_training.corpus.build).
"""
