// Command falco-k8saudit runs the webhook source of Falco's k8saudit plugin (its real code, from its Go
// module) as a receiver for tests: it serves the plugin's endpoint and prints each event the plugin
// accepted as one JSON line on stdout.
//
//	falco-k8saudit <https://127.0.0.1:PORT/k8s-audit> <pem file with key and certificate>
//
// The plugin answers every POST with 200 before it parses the body, so what it accepted is only
// visible here, after parsing: events without a stageTimestamp, or larger than its maxEventSize, are
// logged on stderr and never printed.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"github.com/falcosecurity/plugin-sdk-go/pkg/sdk"
	"github.com/falcosecurity/plugin-sdk-go/pkg/sdk/plugins/source"
	"github.com/falcosecurity/plugins/plugins/k8saudit/pkg/k8saudit"
)

// batchSize is how many events one NextBatch call may return.
const batchSize = 64

// collected is an sdk.EventWriter that keeps the bytes written to it in Go memory.
type collected struct{ data []byte }

func (c *collected) Writer() io.Writer {
	c.data = c.data[:0]
	return c
}

func (c *collected) Write(p []byte) (int, error) {
	c.data = append(c.data, p...)
	return len(p), nil
}

func (c *collected) SetTimestamp(uint64) {}

// writers is an sdk.EventWriters over Go memory: NextBatch only needs Len, Get and the writers.
type writers struct{ evts []*collected }

func (w *writers) Get(i int) sdk.EventWriter { return w.evts[i] }
func (w *writers) Len() int                  { return len(w.evts) }
func (w *writers) ArrayPtr() unsafe.Pointer  { return nil }
func (w *writers) Free()                     {}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: falco-k8saudit <https://host:port/path> <pem file>")
		os.Exit(2)
	}
	plugin := &k8saudit.Plugin{}
	config, _ := json.Marshal(map[string]any{"sslCertificate": os.Args[2]})
	if err := plugin.Init(string(config)); err != nil {
		fmt.Fprintln(os.Stderr, "init:", err)
		os.Exit(1)
	}
	instance, err := plugin.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(1)
	}
	batch := &writers{evts: make([]*collected, batchSize)}
	for i := range batch.evts {
		batch.evts[i] = &collected{}
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	next := instance.(source.Instance)
	for {
		n, err := next.NextBatch(nil, batch)
		for i := 0; i < n; i++ {
			out.Write(batch.evts[i].data)
			out.WriteByte('\n')
		}
		out.Flush()
		if err != nil && !errors.Is(err, sdk.ErrTimeout) {
			fmt.Fprintln(os.Stderr, "next batch:", err)
			os.Exit(1)
		}
	}
}
