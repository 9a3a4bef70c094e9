package watchdecode_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	restclientwatch "k8s.io/client-go/rest/watch"
	"k8s.io/client-go/tools/cache"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/watchdecode"
)

var (
	scheme = func() *runtime.Scheme {
		s := runtime.NewScheme()
		if err := rkv1.AddToScheme(s); err != nil {
			panic(err)
		}
		return s
	}()
	codecs = serializer.NewCodecFactory(scheme)
	gvk    = rkv1.GroupVersion.WithKind("AssumedRole")
)

func newAssumedRole() runtime.Object { return &rkv1.AssumedRole{} }

// assumedRole is an AssumedRole as the API server sends it (managed fields, status), as JSON.
func assumedRole(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/assumedrole.json")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

// frame is one watch event as the API server writes it: a JSON object and a newline.
func frame(t testing.TB, typ watch.EventType, object []byte) []byte {
	t.Helper()
	b, err := json.Marshal(metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Raw: object}})
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// stream is a watch stream with an event of every type, objects changed from the testdata one
// the way a real stream's are, fields client-go drops (an unknown one, and a known one with its
// key in the wrong case), and two events written otherwise than the API server writes them: one
// with its object before its type and a key of no meaning, one indented over many lines.
func stream(t testing.TB) []byte {
	t.Helper()
	ar := assumedRole(t)
	var m map[string]any
	if err := json.Unmarshal(ar, &m); err != nil {
		t.Fatal(err)
	}
	m["metadata"].(map[string]any)["resourceVersion"] = "272"
	spec := m["spec"].(map[string]any)
	spec["unknownField"] = map[string]any{"nested": []any{1, 2.5, "x"}}
	spec["assumeRole"].(map[string]any)["RoleArn"] = "arn:aws:iam::111122223333:role/other"
	modified, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	bookmark := []byte(`{"apiVersion":"rolekeeper.io/v1alpha1","kind":"AssumedRole","metadata":{"resourceVersion":"300","creationTimestamp":null,"annotations":{"k8s.io/initial-events-end":"true"}},"spec":{}}`)
	gone := []byte(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (300)","reason":"Expired","code":410}`)
	var indented bytes.Buffer
	if err := json.Indent(&indented, frame(t, watch.Modified, ar), "", "  "); err != nil {
		t.Fatal(err)
	}
	var b []byte
	b = append(b, frame(t, watch.Added, ar)...)
	b = append(b, frame(t, watch.Modified, modified)...)
	b = append(b, frame(t, watch.Bookmark, bookmark)...)
	b = append(b, `{"object":`+string(modified)+`,"extra":{"a":[1]},"type":"MODIFIED"}`+"\n"...)
	b = append(b, indented.Bytes()...)
	b = append(b, frame(t, watch.Deleted, modified)...)
	b = append(b, frame(t, watch.Error, gone)...)
	return b
}

// clientGoDecoder decodes a JSON watch stream as client-go does for a controller-runtime
// informer of a typed object.
func clientGoDecoder(body io.ReadCloser) watch.Decoder {
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeJSON)
	if !ok {
		panic("no JSON serializer")
	}
	objects := serializer.WithoutConversionCodecFactory{CodecFactory: codecs}.DecoderToVersion(info.Serializer, rkv1.GroupVersion)
	events := streaming.NewDecoder(info.StreamSerializer.NewFrameReader(body), info.StreamSerializer.Serializer)
	return restclientwatch.NewDecoder(events, objects)
}

type decoded struct {
	typ watch.EventType
	obj runtime.Object
}

func decodeAll(t *testing.T, d watch.Decoder) []decoded {
	t.Helper()
	defer d.Close()
	var out []decoded
	for {
		typ, obj, err := d.Decode()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("event %d: %v", len(out), err)
		}
		out = append(out, decoded{typ, obj})
	}
}

func TestDecoderDecodesAsClientGo(t *testing.T) {
	want := decodeAll(t, clientGoDecoder(io.NopCloser(bytes.NewReader(stream(t)))))
	got := decodeAll(t, watchdecode.NewDecoder(io.NopCloser(bytes.NewReader(stream(t))), gvk, newAssumedRole))
	if len(want) != 7 || len(got) != len(want) {
		t.Fatalf("client-go decoded %d events, watchdecode %d; want 7 each", len(want), len(got))
	}
	for i := range want {
		if got[i].typ != want[i].typ {
			t.Errorf("event %d: type %s, client-go %s", i, got[i].typ, want[i].typ)
		}
		if fmt.Sprintf("%T", got[i].obj) != fmt.Sprintf("%T", want[i].obj) || !apiequality.Semantic.DeepEqual(got[i].obj, want[i].obj) {
			t.Errorf("event %d (%s): decoded\n%#v\nclient-go decoded\n%#v", i, got[i].typ, got[i].obj, want[i].obj)
		}
	}
	// What the comparison rests on: the objects are whole, and the stray fields were dropped.
	ar := got[1].obj.(*rkv1.AssumedRole)
	if ar.ResourceVersion != "272" || ar.Spec.AssumeRole.RoleArn != "arn:aws:iam::111122223333:role/reader" ||
		len(ar.ManagedFields) != 2 || len(ar.Status.Conditions) != 3 || ar.Status.Expiration == nil || ar.APIVersion != "" {
		t.Errorf("modified AssumedRole decoded as %+v", ar)
	}
	if ar := got[3].obj.(*rkv1.AssumedRole); ar.ResourceVersion != "272" || len(ar.Status.Conditions) != 3 {
		t.Errorf("AssumedRole of an event with its object first decoded as %+v", ar)
	}
	if ar := got[4].obj.(*rkv1.AssumedRole); ar.ResourceVersion != "271" || len(ar.Status.Conditions) != 3 {
		t.Errorf("AssumedRole of an indented event decoded as %+v", ar)
	}
	if st, ok := got[6].obj.(*metav1.Status); !ok || !apierrors.IsResourceExpired(apierrors.FromObject(st)) {
		t.Errorf("ERROR event decoded as %#v, want the 410 Expired Status", got[6].obj)
	}
}

func TestDecoderRefusesWhatClientGoWouldNotHandOn(t *testing.T) {
	secret := []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}`)
	for name, tc := range map[string]struct {
		stream []byte
		want   string
	}{
		"another kind":   {frame(t, watch.Added, secret), "sent a ADDED event of /v1, Kind=Secret"},
		"unknown type":   {frame(t, "CHANGED", assumedRole(t)), `invalid watch event type: "CHANGED"`},
		"broken object":  {[]byte(`{"type":"ADDED","object":{"kind":"AssumedRole","metadata":[]}}` + "\n"), "decoding a ADDED event's AssumedRole"},
		"cut off object": {frame(t, watch.Added, assumedRole(t))[:1000], io.ErrUnexpectedEOF.Error()},
		"cut off event":  {[]byte(`{"type":"ADDED"`), io.ErrUnexpectedEOF.Error()},
		"no object":      {[]byte(`{"type":"ADDED"}`), "a ADDED watch event without an object"},
		"not an event":   {[]byte(`["ADDED"]`), "[ where { was due"},
	} {
		t.Run(name, func(t *testing.T) {
			d := watchdecode.NewDecoder(io.NopCloser(bytes.NewReader(tc.stream)), gvk, newAssumedRole)
			_, obj, err := d.Decode()
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Fatalf("Decode = %v, %v; want an error with %q", obj, err, tc.want)
			}
		})
	}
}

// apiServer serves the watch of AssumedRoles in namespace ns: resourceVersion "1" gets the test
// stream and its end, "0" a 410 Gone, "hold" one event and then an open stream until the client
// goes (reported on gone).
func apiServer(t *testing.T, gone chan<- struct{}) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/apis/rolekeeper.io/v1alpha1/namespaces/ns/assumedroles" || r.URL.Query().Get("watch") != "true" {
			http.NotFound(w, r)
			return
		}
		switch r.URL.Query().Get("resourceVersion") {
		case "0":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusGone)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version","reason":"Expired","code":410}`))
		case "hold":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(frame(t, watch.Added, assumedRole(t)))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			gone <- struct{}{}
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(stream(t))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// informerWatch is the watch a controller-runtime informer makes, through client-go, against srv;
// with the transport installed when wrap is set.
func informerWatch(t *testing.T, srv *httptest.Server, wrap bool) cache.ListerWatcher {
	t.Helper()
	cfg := &rest.Config{Host: srv.URL, APIPath: "/apis", ContentConfig: rest.ContentConfig{
		GroupVersion:         &rkv1.GroupVersion,
		NegotiatedSerializer: serializer.WithoutConversionCodecFactory{CodecFactory: codecs},
	}}
	if wrap {
		cfg.Wrap(watchdecode.Transport)
	}
	client, err := rest.RESTClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	params := runtime.NewParameterCodec(scheme)
	return &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.Watch = true
			return client.Get().Namespace("ns").Resource("assumedroles").VersionedParams(&opts, params).Watch(ctx)
		},
	}
}

func TestListerWatcherDecodesWhatTheTransportTakes(t *testing.T) {
	gone := make(chan struct{}, 1)
	srv := apiServer(t, gone)
	for _, wrap := range []bool{true, false} {
		t.Run(fmt.Sprintf("transport=%v", wrap), func(t *testing.T) {
			var made atomic.Int64
			lw := cache.ToListerWatcherWithContext(watchdecode.ListerWatcher(informerWatch(t, srv, wrap), gvk, func() runtime.Object {
				made.Add(1)
				return &rkv1.AssumedRole{}
			}))
			ctx := t.Context()

			w, err := lw.WatchWithContext(ctx, metav1.ListOptions{ResourceVersion: "1"})
			if err != nil {
				t.Fatal(err)
			}
			var types []watch.EventType
			for e := range w.ResultChan() {
				types = append(types, e.Type)
				if e.Type != watch.Error {
					if ar, ok := e.Object.(*rkv1.AssumedRole); !ok || ar.Name != "reader" && e.Type != watch.Bookmark {
						t.Errorf("%s event with %#v", e.Type, e.Object)
					}
				}
			}
			if want := []watch.EventType{watch.Added, watch.Modified, watch.Bookmark, watch.Modified, watch.Modified, watch.Deleted, watch.Error}; fmt.Sprint(types) != fmt.Sprint(want) {
				t.Errorf("events %v, want %v", types, want)
			}
			// Only a watch through the transport is decoded here (an object made for each event
			// but the ERROR); without it client-go decodes as before.
			if want := map[bool]int64{true: 6, false: 0}[wrap]; made.Load() != want {
				t.Errorf("%d objects made by the decoder, want %d", made.Load(), want)
			}

			// An error response reaches client-go, which makes it the API error the reflector
			// acts on (410: list again).
			made.Store(0)
			if w, err := lw.WatchWithContext(ctx, metav1.ListOptions{ResourceVersion: "0"}); !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
				t.Errorf("watch from a compacted version: %v, %v; want 410", w, err)
			}
			if made.Load() != 0 {
				t.Errorf("the decoder made %d objects for an error response", made.Load())
			}

			// Stopping the watch ends the request.
			w, err = lw.WatchWithContext(ctx, metav1.ListOptions{ResourceVersion: "hold"})
			if err != nil {
				t.Fatal(err)
			}
			if e := <-w.ResultChan(); e.Type != watch.Added {
				t.Fatalf("first event %v", e)
			}
			w.Stop()
			select {
			case <-gone:
			case <-time.After(30 * time.Second):
				t.Fatal("the API server still holds the watch 30 s after Stop")
			}
		})
	}
}

// BenchmarkDecodeAssumedRoleEvent decodes a watch event of an AssumedRole (2.8 KB, managed
// fields and status as the API server sends them) as client-go does and as watchdecode does.
func BenchmarkDecodeAssumedRoleEvent(b *testing.B) {
	event := frame(b, watch.Modified, assumedRole(b))
	const perStream = 100
	body := bytes.Repeat(event, perStream)
	for name, decoder := range map[string]func(io.ReadCloser) watch.Decoder{
		"client-go":   clientGoDecoder,
		"watchdecode": func(r io.ReadCloser) watch.Decoder { return watchdecode.NewDecoder(r, gvk, newAssumedRole) },
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(event)))
			var d watch.Decoder
			left := 0
			for b.Loop() {
				if left == 0 {
					d, left = decoder(io.NopCloser(bytes.NewReader(body))), perStream
				}
				if _, _, err := d.Decode(); err != nil {
					b.Fatal(err)
				}
				left--
			}
		})
	}
}
