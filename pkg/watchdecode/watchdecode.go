// Package watchdecode decodes the watch streams of the operator's own resources with fewer passes
// over each event than client-go's general decoder makes.
//
// The API server serves custom resources as JSON only. client-go decodes a JSON watch event in
// stages, each reading the whole event: the framer finds where the event ends, the envelope is
// read once for its apiVersion and kind and once more into a WatchEvent, and the object inside is
// read once for its apiVersion and kind and once more into the typed object, each read of the
// standard library's kind checking the bytes before it decodes them. That is about nine passes
// over every AssumedRole the operator is told of, two per issuance (its creation and the status
// the operator writes): in the scale benchmark a sixth of the operator's CPU. The decoder here
// reads the event's type as a token and decodes the object straight into the type the informer
// holds: two passes (the object is found, then decoded), about a third of the CPU
// (BenchmarkDecodeAssumedRoleEvent).
//
// controller-runtime builds the request and client-go sends it as always; only the decoding of
// a successful JSON response changes. controller-runtime gives no way to choose the decoder of an
// informer, so the response is taken where it arrives: ListerWatcher marks the watch request's
// context, Transport (installed on the operator's REST config) hands a marked request's 200
// response to the ListerWatcher and gives client-go an empty body in its place. A request the
// Transport does not see, and every response but a JSON 200 (an error, a 410 Gone, another
// encoding), goes to client-go unchanged, so the informer behaves as it would without this
// package: only slower.
package watchdecode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	kjson "sigs.k8s.io/json"
)

// captureKey marks the context of a watch request whose response the ListerWatcher decodes.
type captureKey struct{}

// capture is where Transport leaves the response of a marked request.
type capture struct{ resp *http.Response }

// Transport wraps a REST config's transport (rest.Config.Wrap) so that ListerWatcher can decode
// the watch responses of its informers. Requests not marked by a ListerWatcher pass through
// untouched.
func Transport(next http.RoundTripper) http.RoundTripper { return transport{next: next} }

type transport struct{ next http.RoundTripper }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	c, _ := req.Context().Value(captureKey{}).(*capture)
	resp, err := t.next.RoundTrip(req)
	if c == nil || err != nil || resp.StatusCode != http.StatusOK || !isJSON(resp.Header.Get("Content-Type")) {
		return resp, err
	}
	c.resp = resp
	empty := *resp
	empty.Body = http.NoBody
	return &empty, nil
}

// WrappedRoundTripper lets client-go's transport utilities find the transport underneath.
func (t transport) WrappedRoundTripper() http.RoundTripper { return t.next }

func isJSON(contentType string) bool {
	mediaType, _, err := mime.ParseMediaType(contentType)
	return err == nil && mediaType == runtime.ContentTypeJSON
}

// ListerWatcher is lw with its watches decoded here when Transport takes their response:
// lw's objects of kind gvk (a JSON-only kind), each made by newObject. Lists are lw's own.
func ListerWatcher(lw cache.ListerWatcher, gvk schema.GroupVersionKind, newObject func() runtime.Object) cache.ListerWatcher {
	inner := cache.ToListerWatcherWithContext(lw)
	return &cache.ListWatch{
		ListWithContextFunc: inner.ListWithContext,
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			c := &capture{}
			w, err := inner.WatchWithContext(context.WithValue(ctx, captureKey{}, c), opts)
			if c.resp == nil {
				return w, err // Transport did not take the response: client-go decodes it
			}
			if w != nil {
				w.Stop() // client-go's watcher, over the empty body
			}
			if err != nil {
				_ = c.resp.Body.Close()
				return nil, err
			}
			return watch.NewStreamWatcherWithLogger(klog.FromContext(ctx), NewDecoder(c.resp.Body, gvk, newObject),
				// as client-go reports an event it cannot decode: the cause is not known
				apierrors.NewClientErrorReporter(http.StatusInternalServerError, http.MethodGet, "ClientWatchDecoding")), nil
		},
	}
}

// NewDecoder reads watch events of kind gvk from a JSON watch stream. An object is made by
// newObject and decoded as client-go decodes a typed object (JSON keys matched case-sensitively,
// unknown fields dropped), and handed on without its apiVersion and kind, as client-go hands it;
// an ERROR event's object is the Status the API server sent (without them too).
func NewDecoder(body io.ReadCloser, gvk schema.GroupVersionKind, newObject func() runtime.Object) watch.Decoder {
	return &decoder{body: body, stream: kjson.NewDecoderCaseSensitivePreserveInts(body), gvk: gvk, newObject: newObject}
}

type decoder struct {
	body      io.ReadCloser
	stream    kjson.Decoder
	gvk       schema.GroupVersionKind
	newObject func() runtime.Object
}

// Decode returns the next event; io.EOF at the end of the stream. The event's keys are read as
// tokens, and its object is decoded straight into the type its event type calls for: the API
// server writes "type" first. An event with "object" first has its object kept whole and decoded
// once the type is known, as client-go always does.
func (d *decoder) Decode() (watch.EventType, runtime.Object, error) {
	if err := d.delim('{'); err != nil {
		return "", nil, err // io.EOF: the stream ended between events
	}
	typ, obj, err := d.event()
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // the stream ended inside an event
	}
	return typ, obj, err
}

func (d *decoder) event() (watch.EventType, runtime.Object, error) {
	var (
		typ     watch.EventType
		obj     runtime.Object
		pending json.RawMessage // the object, when it came before the type
	)
	for d.stream.More() {
		key, err := d.str()
		if err != nil {
			return "", nil, err
		}
		switch key {
		case "type":
			s, err := d.str()
			if err != nil {
				return "", nil, err
			}
			typ = watch.EventType(s)
		case "object":
			if typ == "" {
				if err := d.stream.Decode(&pending); err != nil {
					return "", nil, err
				}
				continue
			}
			if obj, err = d.object(typ, d.stream.Decode); err != nil {
				return "", nil, err
			}
		default:
			var skip json.RawMessage
			if err := d.stream.Decode(&skip); err != nil {
				return "", nil, err
			}
		}
	}
	if err := d.delim('}'); err != nil {
		return "", nil, err
	}
	if obj == nil && pending != nil {
		var err error
		if obj, err = d.object(typ, func(v any) error { return kjson.UnmarshalCaseSensitivePreserveInts(pending, v) }); err != nil {
			return "", nil, err
		}
	}
	if obj == nil {
		return "", nil, fmt.Errorf("a %s watch event without an object", typ)
	}
	return typ, obj, nil
}

// object decodes the object of an event of type typ with decode.
func (d *decoder) object(typ watch.EventType, decode func(any) error) (runtime.Object, error) {
	switch typ {
	case watch.Error:
		status := &metav1.Status{}
		if err := decode(status); err != nil {
			return nil, fmt.Errorf("decoding the Status of an ERROR event: %w", err)
		}
		status.TypeMeta = metav1.TypeMeta{}
		return status, nil
	case watch.Added, watch.Modified, watch.Deleted, watch.Bookmark:
	default:
		return nil, fmt.Errorf("got invalid watch event type: %q", typ)
	}
	obj := d.newObject()
	if err := decode(obj); err != nil {
		return nil, fmt.Errorf("decoding a %s event's %s: %w", typ, d.gvk.Kind, err)
	}
	kind := obj.GetObjectKind()
	if got := kind.GroupVersionKind(); got != d.gvk {
		return nil, fmt.Errorf("a watch of %s sent a %s event of %s", d.gvk, typ, got)
	}
	kind.SetGroupVersionKind(schema.GroupVersionKind{})
	return obj, nil
}

// delim reads the delimiter want.
func (d *decoder) delim(want json.Delim) error {
	t, err := d.stream.Token()
	if err != nil {
		return err
	}
	if t != want {
		return fmt.Errorf("watch stream: %v where %v was due", t, want)
	}
	return nil
}

// str reads a string: a key, or the event's type.
func (d *decoder) str() (string, error) {
	t, err := d.stream.Token()
	if err != nil {
		return "", err
	}
	s, ok := t.(string)
	if !ok {
		return "", fmt.Errorf("watch stream: %v where a string was due", t)
	}
	return s, nil
}

// Close closes the stream.
func (d *decoder) Close() { _ = d.body.Close() }
