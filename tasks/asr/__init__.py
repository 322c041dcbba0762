"""Speech recognition from the raw waveform: a GFSSM encoder with a CTC head over
characters, the ``asr`` task plugin, data readers, a synthetic corpus generator, decoding,
long-audio transcription and evaluation."""
