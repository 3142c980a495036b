"""Front-ends: waveform -> frame features (log-mel, LFCC, sinc filterbank, SSL encoders)."""
