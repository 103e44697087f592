package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
)

// MaxLineBytes is the longest worker output line logged whole; the rest of
// a longer line is dropped and the line is marked cut (spec section 8).
const MaxLineBytes = 16 << 10

// logLines logs every line read from r (a worker process's stdout or
// stderr) to logger at info, with stream ("stdout" or "stderr"), until r
// ends. It holds one fixed MaxLineBytes buffer whatever the process writes:
// a line longer than that is logged up to MaxLineBytes with cut=true and the
// rest is read and dropped up to the next newline, so a process that writes
// without newlines cannot grow obsproxy's memory. A trailing "\r" is
// dropped; an unterminated last line is logged when r ends.
func logLines(r io.Reader, logger *slog.Logger, stream string) {
	br := bufio.NewReaderSize(r, MaxLineBytes)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			logLine(logger, stream, line, false)
		case errors.Is(err, bufio.ErrBufferFull):
			logLine(logger, stream, line, true)
			// Drop the rest of the line, a buffer at a time.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				return
			}
		default:
			if len(line) > 0 {
				logLine(logger, stream, line, false)
			}
			return
		}
	}
}

func logLine(logger *slog.Logger, stream string, line []byte, cut bool) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	attrs := []slog.Attr{slog.String("stream", stream), slog.String("line", string(line))}
	if cut {
		attrs = append(attrs, slog.Bool("cut", true))
	}
	logger.LogAttrs(context.Background(), slog.LevelInfo, "worker output", attrs...)
}
