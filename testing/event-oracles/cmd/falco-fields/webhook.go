package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"unsafe"

	"github.com/falcosecurity/plugin-sdk-go/pkg/sdk"
	"github.com/falcosecurity/plugins/plugins/k8saudit/pkg/k8saudit"
	"github.com/kube-audit-rest/kube-audit-rest/testing/event-oracles/internal/lines"
)

// webhookBatchSize is how many events one NextBatch call may return, as Falco's own default batch.
const webhookBatchSize = int(sdk.DefaultBatchSize)

// receivedResult is printed for each event the webhook source delivered, numbered from 1 in arrival order.
type receivedResult struct {
	Received uint64            `json:"received"`
	Fields   map[string]any    `json:"fields,omitempty"`
	Errors   map[string]string `json:"errors,omitempty"`
}

// splitArgs takes --webhook=URL and --ssl-certificate=FILE out of the arguments; the rest name fields.
func splitArgs(args []string) (webhookURL, sslCertificate string, fields []string) {
	for _, arg := range args {
		switch {
		case strings.HasPrefix(arg, "--webhook="):
			webhookURL = strings.TrimPrefix(arg, "--webhook=")
		case strings.HasPrefix(arg, "--ssl-certificate="):
			sslCertificate = strings.TrimPrefix(arg, "--ssl-certificate=")
		default:
			fields = append(fields, arg)
		}
	}
	return webhookURL, sslCertificate, fields
}

// serveWebhook receives audit EventList batches through the plugin's own webhook source (Plugin.Open with an
// http or https URL: the plugin's HTTP server, its body limit, its payload parser) and prints each event's
// fields as it is delivered, until SIGTERM or SIGINT. Events are drained from the source's batches the way
// Falco's event loop drains them (NextBatch until a timeout, then again).
func serveWebhook(plugin *k8saudit.Plugin, requests []*request, url string) error {
	instance, err := plugin.Open(url)
	if err != nil {
		return fmt.Errorf("open %s: %w", url, err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	batch := newMemoryBatch(webhookBatchSize)
	w := lines.NewStdoutWriter()
	var received uint64
	for {
		batch.reset()
		n, err := instance.NextBatch(nil, batch)
		for i := 0; i < n; i++ {
			received++
			fields, errs := extractAll(plugin, requests, received, batch.evts[i].buf.Bytes())
			if werr := w.Write(receivedResult{Received: received, Fields: fields, Errors: errs}); werr != nil {
				return werr
			}
		}
		// Flush after every batch: the test reads events as they arrive.
		if ferr := w.Flush(); ferr != nil {
			return ferr
		}
		switch {
		case err == nil || errors.Is(err, sdk.ErrTimeout):
		case errors.Is(err, sdk.ErrEOF):
			return nil
		default:
			return err
		}
		select {
		case <-stop:
			if closer, ok := instance.(interface{ Close() }); ok {
				closer.Close()
			}
			return w.Flush()
		default:
		}
	}
}

// memoryBatch implements sdk.EventWriters in Go memory: the push source only writes each event's bytes and
// timestamp into it, so the driver can read them back without the C buffers Falco's own batch uses.
type memoryBatch struct {
	evts []*memoryEvent
}

type memoryEvent struct {
	buf       bytes.Buffer
	timestamp uint64
}

func newMemoryBatch(size int) *memoryBatch {
	b := &memoryBatch{evts: make([]*memoryEvent, size)}
	for i := range b.evts {
		b.evts[i] = &memoryEvent{}
	}
	return b
}

// reset empties every event before a NextBatch call, which writes each event's bytes once.
func (b *memoryBatch) reset() {
	for _, e := range b.evts {
		e.buf.Reset()
	}
}

func (b *memoryBatch) Get(i int) sdk.EventWriter { return b.evts[i] }
func (b *memoryBatch) Len() int                  { return len(b.evts) }
func (b *memoryBatch) ArrayPtr() unsafe.Pointer  { return nil }
func (b *memoryBatch) Free()                     {}
func (e *memoryEvent) Writer() io.Writer         { return &e.buf }
func (e *memoryEvent) SetTimestamp(value uint64) { e.timestamp = value }
