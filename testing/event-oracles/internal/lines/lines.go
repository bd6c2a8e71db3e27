// Package lines reads newline-delimited input of any line length and writes one JSON result per line, the
// shape both kube-audit-rest event oracles share.
package lines

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// readBufferBytes is only the reader's initial buffer: ReadBytes grows past it, so a request body of several
// MiB is read as one line rather than failing like bufio.Scanner's 64 KiB token limit would.
const readBufferBytes = 1 << 20

// Each calls fn with the 1-based number and bytes of every line on r, without the trailing "\n" (or "\r\n").
// A final line without "\n" counts; the empty string after a final "\n" does not.
func Each(r io.Reader, fn func(number int, line []byte) error) error {
	reader := bufio.NewReaderSize(r, readBufferBytes)
	for number := 1; ; number++ {
		line, err := reader.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			if fnErr := fn(number, line); fnErr != nil {
				return fnErr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading line %d: %w", number, err)
		}
	}
}

// Writer writes values as compact JSON, one per line, to a buffered stdout.
type Writer struct {
	out *bufio.Writer
	enc *json.Encoder
}

// NewStdoutWriter returns a Writer on os.Stdout; call Flush before exit.
func NewStdoutWriter() *Writer {
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	// Field values are shown as the consumer extracted them, so "<", ">" and "&" stay as they are.
	enc.SetEscapeHTML(false)
	return &Writer{out: out, enc: enc}
}

// Write encodes v and its terminating newline.
func (w *Writer) Write(v any) error { return w.enc.Encode(v) }

// Flush writes out what is buffered.
func (w *Writer) Flush() error { return w.out.Flush() }

// Main runs a line oracle: it feeds stdin to each, writes every result, and exits 0 once all input was read
// (whatever the verdicts), or 1 with a message on stderr when input or output fails.
func Main(name string, each func(number int, line []byte) any) {
	w := NewStdoutWriter()
	err := Each(os.Stdin, func(number int, line []byte) error {
		return w.Write(each(number, line))
	})
	if flushErr := w.Flush(); err == nil {
		err = flushErr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
