package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The Rust benchmark prints these fingerprints of its workload (`workload` lines of
// cache-core/benches/client_go_cases.rs): the Go side must build the very same objects in the
// very same order.
var rustFingerprints = map[int]string{
	1000:  "06f69d9ac30b29f9",
	10000: "e5db01f85ab3d5d9",
}

func TestWorkloadMatchesRust(t *testing.T) {
	for n, want := range rustFingerprints {
		if got := newData(n).fingerprint(); got != want {
			t.Errorf("workload of %d objects: fingerprint %s, the Rust side's is %s", n, got, want)
		}
	}
}

func TestWorkloadShape(t *testing.T) {
	d := newData(5000)
	seen := make([]bool, d.N)
	for _, i := range d.Order {
		if seen[i] {
			t.Fatalf("order visits %d twice", i)
		}
		seen[i] = true
	}
	namespaces, nodes := map[string]bool{}, map[string]bool{}
	for i, o := range d.Base {
		namespaces[o.Namespace] = true
		nodes[o.Node] = true
		if d.Same[i].Node != o.Node || d.Same[i].RV == o.RV {
			t.Fatalf("%s: the same-index version changes the node or keeps the version", o.Key())
		}
		if d.Moved[i].Node == o.Node {
			t.Fatalf("%s: the moved version stays on %s", o.Key(), o.Node)
		}
		if len(o.Payload) != Payload || len(o.Labels) != 3 {
			t.Fatalf("%s: payload %d bytes, %d labels", o.Key(), len(o.Payload), len(o.Labels))
		}
	}
	if len(namespaces) != Namespaces || len(nodes) < 990 {
		t.Errorf("%d namespaces and %d nodes, want %d and about %d", len(namespaces), len(nodes), Namespaces, Nodes)
	}
	if len(d.NodeValues) != Nodes || len(d.NamespaceValues) != Namespaces {
		t.Errorf("%d node values, %d namespace values", len(d.NodeValues), len(d.NamespaceValues))
	}
}

// Every case runs one tiny measurement and checks its own results (an error otherwise).
func TestIndexerCasesTiny(t *testing.T) {
	d := newData(2000)
	for _, c := range append(append([]Case{}, Cases...), MemoryCases...) {
		v, err := c.Run(d, TinySettings)
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
		} else if v <= 0 {
			t.Errorf("%s: %v %s", c.Name, v, c.Unit)
		}
	}
}

func TestInformerCasesTiny(t *testing.T) {
	d := &Data{N: 3000}
	for _, c := range InformerCases {
		v, err := c.Run(d, TinySettings)
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
		} else if v <= 0 {
			t.Errorf("%s: %v %s", c.Name, v, c.Unit)
		}
	}
}

// The informer syncs through client-go's default path, a watch with initial events, and its
// cache then holds every object of the source.
func TestInformerStreamsTheInitialList(t *testing.T) {
	source := filledSource(500)
	informer := newInformer(source)
	count := newCounter()
	if _, err := informer.AddEventHandler(count.handler()); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { informer.Run(stop); close(done) }()
	defer func() { close(stop); <-done }()
	count.wait(500)
	if source.streams.Load() != 1 || source.lists.Load() != 0 {
		t.Errorf("%d watches with initial events, %d lists; want 1 and 0", source.streams.Load(), source.lists.Load())
	}
	if n := len(informer.GetIndexer().ListKeys()); n != 500 {
		t.Errorf("the informer holds %d objects", n)
	}
	byNode, err := informer.GetIndexer().ByIndex("node", "node-0007")
	if err != nil || len(byNode) != 1 || byNode[0].(*Pod).Name != "pod-00000007" {
		t.Errorf("ByIndex(node, node-0007) = %v, %v", byNode, err)
	}
}

func TestMeasureIsTheMedian(t *testing.T) {
	calls := 0
	got := measure(Settings{Samples: 3}, func(iters int) time.Duration {
		calls++
		// Warm-up, then samples of 5, 1 and 3 ns per iteration.
		return time.Duration([]int{1, 5, 1, 3}[calls-1] * iters)
	})
	if got != 3 {
		t.Errorf("median %v, want 3", got)
	}
}

func TestRunWritesEveryCase(t *testing.T) {
	var out, log bytes.Buffer
	if err := Run(&out, &log, TinySettings, []int{1000}, 1000, regexp.MustCompile("get_by_key|memory_objects|informer_watch")); err != nil {
		t.Fatal(err)
	}
	results, err := readResultsFrom(&out)
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	for _, r := range results {
		if r.Side != "client-go" || r.N != 1000 {
			t.Errorf("result %+v", r)
		}
		cases = append(cases, r.Case)
	}
	if got := strings.Join(cases, ","); got != "workload,get_by_key,memory_objects,informer_watch_event" {
		t.Errorf("cases %s", got)
	}
}

func TestReportTable(t *testing.T) {
	results := []Result{
		{Side: "client-go", Case: "workload", N: 10, Fingerprint: "a"},
		{Side: "ours", Case: "workload", N: 10, Fingerprint: "a"},
		{Side: "client-go", Case: "get_by_key", N: 10, Unit: "ns/op", Value: 40},
		{Side: "client-go", Case: "get_by_key", N: 10, Unit: "ns/op", Value: 50},
		{Side: "client-go", Case: "get_by_key", N: 10, Unit: "ns/op", Value: 41},
		{Side: "ours", Case: "get_by_key", N: 10, Unit: "ns/op", Value: 20},
		{Side: "ours", Case: "list", N: 10, Unit: "ns/object", Value: 2},
		{Side: "client-go", Case: "list", N: 10, Unit: "ns/object", Value: 4},
		{Side: "client-go", Case: "replace", N: 10, Unit: "ns/object", Value: 4},
	}
	rows, warnings := Table(results)
	if len(rows) != 3 || rows[0].Case != "get_by_key" || rows[1].Case != "replace" || rows[2].Case != "list" {
		t.Fatalf("rows %+v", rows)
	}
	if rows[0].ClientGo != 41 || rows[0].Rounds[0] != 3 {
		t.Errorf("client-go get_by_key median %v of %d", rows[0].ClientGo, rows[0].Rounds[0])
	}
	if r, ok := rows[0].Ratio(); !ok || r != 20.0/41 {
		t.Errorf("ratio %v %v", r, ok)
	}
	if _, ok := rows[1].Ratio(); ok {
		t.Errorf("replace has a ratio without our side")
	}
	if !containsWarning(warnings, "replace at 10: no result of ours") {
		t.Errorf("warnings %q", warnings)
	}
	var md, csv bytes.Buffer
	if err := WriteMarkdown(&md, rows, warnings, "# head"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "| GetByKey | 10 | ns/op | 41.0 | 20.0 | 0.49× |") {
		t.Errorf("markdown:\n%s", md.String())
	}
	if err := WriteCSV(&csv, rows); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(csv.String(), "replace,10,ns/object,4,,\n") {
		t.Errorf("csv:\n%s", csv.String())
	}
	if data := GnuplotData(chartRows(rows)); strings.Count(data, "\n") != 2 || !strings.HasPrefix(data, `"List, per object, 10" 0.5`) {
		t.Errorf("chart data:\n%s", data)
	}
}

func TestReportWarnsOfDifferentWorkloads(t *testing.T) {
	_, warnings := Table([]Result{
		{Side: "client-go", Case: "workload", N: 10, Fingerprint: "a"},
		{Side: "ours", Case: "workload", N: 10, Fingerprint: "b"},
	})
	if !containsWarning(warnings, "the workloads of 10 objects differ") {
		t.Errorf("warnings %q", warnings)
	}
}

func containsWarning(warnings []string, part string) bool {
	for _, w := range warnings {
		if strings.Contains(w, part) {
			return true
		}
	}
	return false
}

func TestReplaceBlock(t *testing.T) {
	text := "intro\n" + blockStart + "\nold table\n" + blockEnd + "\nrest\n"
	got, err := ReplaceBlock(text, "new table\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "intro\n" + blockStart + "\nnew table\n" + blockEnd + "\nrest\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := ReplaceBlock("no markers", "x"); err == nil {
		t.Error("a text without markers was accepted")
	}
}
