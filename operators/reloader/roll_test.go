package reloader

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/setpoint-dev/setpoint/operator/configdata"
)

func TestDecide(t *testing.T) {
	tracked := []string{"ConfigMap/a", "Secret/b"}
	tests := []struct {
		name        string
		recorded    Hashes
		current     map[string]string
		tracked     []string
		wantChanged []string
		wantRecord  Hashes // nil: nothing to write
	}{
		{"first sight records without rolling", nil, map[string]string{"ConfigMap/a": "1", "Secret/b": "2"}, tracked,
			nil, Hashes{"ConfigMap/a": "1", "Secret/b": "2"}},
		{"unchanged: nothing", Hashes{"ConfigMap/a": "1", "Secret/b": "2"}, map[string]string{"ConfigMap/a": "1", "Secret/b": "2"}, tracked,
			nil, nil},
		{"content changed: roll", Hashes{"ConfigMap/a": "1", "Secret/b": "2"}, map[string]string{"ConfigMap/a": "9", "Secret/b": "2"}, tracked,
			[]string{"ConfigMap/a"}, Hashes{"ConfigMap/a": "9", "Secret/b": "2"}},
		{"deleted: keep the record, no roll", Hashes{"ConfigMap/a": "1", "Secret/b": "2"}, map[string]string{"Secret/b": "2"}, tracked,
			nil, nil},
		{"newly used: record, no roll", Hashes{"ConfigMap/a": "1"}, map[string]string{"ConfigMap/a": "1", "Secret/b": "2"}, tracked,
			nil, Hashes{"ConfigMap/a": "1", "Secret/b": "2"}},
		{"no longer tracked: dropped", Hashes{"ConfigMap/a": "1", "Secret/b": "2"}, map[string]string{"ConfigMap/a": "1", "Secret/b": "2"}, []string{"ConfigMap/a"},
			nil, Hashes{"ConfigMap/a": "1"}},
		{"missing and never seen: nothing", Hashes{}, map[string]string{}, tracked, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.recorded, tt.current, tt.tracked)
			if !reflect.DeepEqual(d.Changed, tt.wantChanged) || !reflect.DeepEqual(d.Record, tt.wantRecord) {
				t.Errorf("Decide = %+v, want changed %v record %v", d, tt.wantChanged, tt.wantRecord)
			}
		})
	}
}

func TestHashesRoundTrip(t *testing.T) {
	h := Hashes{"Secret/b": "2", "ConfigMap/a": "1"}
	if h.String() != `{"ConfigMap/a":"1","Secret/b":"2"}` {
		t.Errorf("String = %s", h)
	}
	back, err := ParseHashes(h.String())
	if err != nil || !reflect.DeepEqual(back, h) {
		t.Errorf("ParseHashes = %v, %v", back, err)
	}
	if _, err := ParseHashes("not json"); err == nil {
		t.Error("ParseHashes accepted garbage")
	}
	if h.Combined() == (Hashes{"ConfigMap/a": "1", "Secret/b": "3"}).Combined() {
		t.Error("Combined ignores a digest")
	}
}

func TestEnvName(t *testing.T) {
	for ref, want := range map[Ref]string{
		{KindConfigMap, "app-config"}: "RELOADER_CONFIGMAP_APP_CONFIG",
		{KindSecret, "db.creds"}:      "RELOADER_SECRET_DB_CREDS",
	} {
		if got := EnvName(ref); got != want {
			t.Errorf("EnvName(%v) = %s, want %s", ref, got, want)
		}
	}
}

func TestPatch(t *testing.T) {
	spec := &corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "migrate"}},
		Containers:     []corev1.Container{{Name: "web"}, {Name: "sidecar"}},
	}
	uses := []Use{
		{Ref: Ref{KindConfigMap, "cfg"}, Containers: []string{"migrate", "web"}},
		{Ref: Ref{KindSecret, "named"}}, // named in a list, used by no container
	}
	record := Hashes{"ConfigMap/cfg": "c2", "Secret/named": "s2"}
	tests := []struct {
		name     string
		d        Decision
		strategy Strategy
		want     string
	}{
		{"nothing to do", Decision{}, StrategyAnnotation, ""},
		{"record only", Decision{Record: record}, StrategyEnv,
			`{"metadata":{"annotations":{"reloader.setpoint.dev/hashes":"{\"ConfigMap/cfg\":\"c2\",\"Secret/named\":\"s2\"}"}}}`},
		{"annotation roll", Decision{Changed: []string{"ConfigMap/cfg"}, Record: record}, StrategyAnnotation,
			`{"metadata":{"annotations":{"reloader.setpoint.dev/hashes":"{\"ConfigMap/cfg\":\"c2\",\"Secret/named\":\"s2\"}"}},` +
				`"spec":{"template":{"metadata":{"annotations":{"reloader.setpoint.dev/config-hash":"` + record.Combined() + `"}}}}}`},
		{"env roll: only the containers that use it", Decision{Changed: []string{"ConfigMap/cfg"}, Record: record}, StrategyEnv,
			`{"metadata":{"annotations":{"reloader.setpoint.dev/hashes":"{\"ConfigMap/cfg\":\"c2\",\"Secret/named\":\"s2\"}"}},` +
				`"spec":{"template":{"spec":{` +
				`"containers":[{"env":[{"name":"RELOADER_CONFIGMAP_CFG","value":"c2"}],"name":"web"}],` +
				`"initContainers":[{"env":[{"name":"RELOADER_CONFIGMAP_CFG","value":"c2"}],"name":"migrate"}]}}}}`},
		{"env roll of an object no container reads: every container", Decision{Changed: []string{"Secret/named"}, Record: record}, StrategyEnv,
			`{"metadata":{"annotations":{"reloader.setpoint.dev/hashes":"{\"ConfigMap/cfg\":\"c2\",\"Secret/named\":\"s2\"}"}},` +
				`"spec":{"template":{"spec":{` +
				`"containers":[{"env":[{"name":"RELOADER_SECRET_NAMED","value":"s2"}],"name":"sidecar"},{"env":[{"name":"RELOADER_SECRET_NAMED","value":"s2"}],"name":"web"}]}}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Patch(spec, uses, tt.d, tt.strategy)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("Patch =\n  %s\nwant\n  %s", got, tt.want)
			}
			if got != nil && !json.Valid(got) {
				t.Errorf("invalid JSON %s", got)
			}
		})
	}
}

func TestSettle(t *testing.T) {
	now := time.Unix(0, 0)
	r := &reloader{opts: Options{Quiet: time.Second, Now: func() time.Time { return now }}, key: func() configdata.Key { return nil }, pending: map[string]pending{}}
	if w := r.settle("w", "h1"); w != time.Second {
		t.Fatalf("first sight of a change waits %v, want 1s", w)
	}
	now = now.Add(600 * time.Millisecond)
	if w := r.settle("w", "h1"); w != 400*time.Millisecond {
		t.Fatalf("same target waits %v, want the rest, 400ms", w)
	}
	now = now.Add(600 * time.Millisecond)
	if w := r.settle("w", "h2"); w != time.Second {
		t.Fatalf("a further change waits %v, want a fresh 1s", w)
	}
	now = now.Add(time.Second)
	if w := r.settle("w", "h2"); w != 0 {
		t.Fatalf("after a quiet second it waits %v, want 0", w)
	}
	// A change that never settles is rolled after ten times Quiet.
	r.forget("w")
	for i := range 20 {
		w := r.settle("w", string(rune('a'+i)))
		// Change i comes i*999ms after the first.
		if i <= 10 && w == 0 {
			t.Fatalf("rolled after %d changes, before ten quiet windows", i)
		}
		if i > 10 && w != 0 {
			t.Fatalf("change %d still waits %v after ten quiet windows", i, w)
		}
		now = now.Add(time.Second - time.Millisecond)
	}
	r.opts.Quiet = -1
	if w := r.settle("x", "h"); w != 0 {
		t.Errorf("negative Quiet waits %v", w)
	}
}

// TestANewKeyRecordsWithoutARoll: digests recorded under another key, or
// before digests were keyed, are recorded anew and roll nothing.
func TestANewKeyRecordsWithoutARoll(t *testing.T) {
	key := configdata.Key("a-key-of-at-least-32-bytes-......")
	data := map[string][]byte{"a": []byte("1")}
	current := map[string]string{"ConfigMap/a": key.Digest(data, nil), KeyEntry: key.Fingerprint()}
	tracked := []string{"ConfigMap/a", KeyEntry}
	for name, recorded := range map[string]Hashes{
		"unkeyed, from before": {"ConfigMap/a": configdata.Key(nil).Digest(data, nil)},
		"another key":          {"ConfigMap/a": configdata.Key("another-key-of-32-bytes-........").Digest(data, nil), KeyEntry: "0123456789abcdef"},
	} {
		d := Decide(Comparable(recorded, key), current, tracked)
		if len(d.Changed) != 0 || d.Record[KeyEntry] != key.Fingerprint() {
			t.Errorf("%s: changed %v, record %v", name, d.Changed, d.Record)
		}
	}
	same := Hashes{"ConfigMap/a": current["ConfigMap/a"], KeyEntry: key.Fingerprint()}
	if d := Decide(Comparable(same, key), current, tracked); d.Record != nil || len(d.Changed) != 0 {
		t.Errorf("same key: %+v", d)
	}
	changed := map[string]string{"ConfigMap/a": key.Digest(map[string][]byte{"a": []byte("2")}, nil), KeyEntry: key.Fingerprint()}
	if d := Decide(Comparable(same, key), changed, tracked); len(d.Changed) != 1 || d.Changed[0] != "ConfigMap/a" {
		t.Errorf("a change under the same key: %+v", d)
	}
}
