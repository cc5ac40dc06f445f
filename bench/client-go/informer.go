package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// The informer workload, as the Rust informer benchmark's (cache-core/benches/support/pods.rs):
// pods of about 500 bytes in 100 namespaces on 1,000 nodes.
const (
	// InformerObjects is how many objects the source holds.
	InformerObjects = 100_000
	// InformerEvents is how many watch events one timed iteration applies.
	InformerEvents = 10_000
)

// Pod is the informer's object: Kubernetes metadata (namespace, name, resource version), a node
// and a 400-byte body.
type Pod struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Node              string `json:"node"`
	Payload           string `json:"payload"`
}

// DeepCopyObject makes Pod a runtime.Object.
func (p *Pod) DeepCopyObject() runtime.Object {
	c := *p
	p.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return &c
}

// PodList is what the source's List returns.
type PodList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`
	Items           []Pod `json:"items"`
}

// DeepCopyObject makes PodList a runtime.Object.
func (l *PodList) DeepCopyObject() runtime.Object {
	c := *l
	c.Items = make([]Pod, len(l.Items))
	for i := range l.Items {
		c.Items[i] = *l.Items[i].DeepCopyObject().(*Pod)
	}
	return &c
}

var payload400 = strings.Repeat("x", 400)

// newPod is pod i on node `node` (modulo 1,000).
func newPod(i, node int) *Pod {
	return &Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: fmt.Sprintf("ns-%03d", i%100),
			Name:      fmt.Sprintf("pod-%08d", i),
		},
		Node:    fmt.Sprintf("node-%04d", node%1000),
		Payload: payload400,
	}
}

// memSource is an in-memory ListerWatcher: a collection with increasing resource versions that
// lists, and watches with or without initial events (client-go's watch-list, on by default).
type memSource struct {
	mu      sync.Mutex
	objs    map[string]*Pod
	rv      uint64
	watches map[*memWatch]struct{}
	// lists and streams count the List calls and the watches with initial events.
	lists, streams atomic.Int64
}

func newMemSource() *memSource {
	return &memSource{objs: map[string]*Pod{}, watches: map[*memWatch]struct{}{}}
}

// put stores p at the next resource version and tells every watch.
func (s *memSource) put(p *Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rv++
	p.ResourceVersion = strconv.FormatUint(s.rv, 10)
	key := p.Namespace + "/" + p.Name
	typ := watch.Modified
	if _, ok := s.objs[key]; !ok {
		typ = watch.Added
	}
	s.objs[key] = p
	for w := range s.watches {
		w.send(watch.Event{Type: typ, Object: p})
	}
}

func (s *memSource) List(metav1.ListOptions) (runtime.Object, error) {
	s.lists.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &PodList{Items: make([]Pod, 0, len(s.objs))}
	l.ResourceVersion = strconv.FormatUint(s.rv, 10)
	for _, p := range s.objs {
		l.Items = append(l.Items, *p)
	}
	return l, nil
}

func (s *memSource) Watch(options metav1.ListOptions) (watch.Interface, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	initial := options.SendInitialEvents != nil && *options.SendInitialEvents
	size := 4 * InformerEvents
	if initial {
		s.streams.Add(1)
		size += len(s.objs) + 1
	}
	w := &memWatch{source: s, ch: make(chan watch.Event, size), done: make(chan struct{})}
	if initial {
		for _, p := range s.objs {
			w.ch <- watch.Event{Type: watch.Added, Object: p}
		}
		bookmark := &Pod{ObjectMeta: metav1.ObjectMeta{
			ResourceVersion: strconv.FormatUint(s.rv, 10),
			Annotations:     map[string]string{metav1.InitialEventsAnnotationKey: "true"},
		}}
		w.ch <- watch.Event{Type: watch.Bookmark, Object: bookmark}
	}
	s.watches[w] = struct{}{}
	return w, nil
}

type memWatch struct {
	source *memSource
	ch     chan watch.Event
	done   chan struct{}
	once   sync.Once
}

func (w *memWatch) send(e watch.Event) {
	select {
	case w.ch <- e:
	case <-w.done:
	}
}

func (w *memWatch) Stop() {
	w.once.Do(func() {
		close(w.done)
		go func() {
			w.source.mu.Lock()
			delete(w.source.watches, w)
			w.source.mu.Unlock()
		}()
	})
}

func (w *memWatch) ResultChan() <-chan watch.Event { return w.ch }

// counter is the one no-op handler: it counts what it is told and wakes a waiter at a target.
type counter struct {
	n      atomic.Int64
	target atomic.Int64 // math.MaxInt64 while nobody waits
	mu     sync.Mutex
	reach  chan struct{}
}

func newCounter() *counter {
	c := &counter{}
	c.target.Store(math.MaxInt64)
	return c
}

func (c *counter) inc() {
	if n := c.n.Add(1); n >= c.target.Load() {
		c.wake()
	}
}

func (c *counter) wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reach != nil && c.n.Load() >= c.target.Load() {
		close(c.reach)
		c.reach = nil
		c.target.Store(math.MaxInt64)
	}
}

// wait returns when the count reaches target.
func (c *counter) wait(target int64) {
	c.mu.Lock()
	reach := make(chan struct{})
	c.reach = reach
	c.target.Store(target)
	c.mu.Unlock()
	// A count that passed the target before it was set wakes nobody: look again.
	c.wake()
	<-reach
}

func (c *counter) handler() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.inc() },
		UpdateFunc: func(any, any) { c.inc() },
		DeleteFunc: func(any) { c.inc() },
	}
}

func newInformer(s *memSource) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformer(s, &Pod{}, 0, cache.Indexers{
		cache.NamespaceIndex: cache.MetaNamespaceIndexFunc,
		"node":               func(obj any) ([]string, error) { return []string{obj.(*Pod).Node}, nil },
	})
}

func filledSource(n int) *memSource {
	s := newMemSource()
	for i := 0; i < n; i++ {
		s.put(newPod(i, i))
	}
	return s
}

// InformerCases measure client-go's SharedIndexInformer with the workload's two indexes and one
// handler: the initial sync of every object (milliseconds, from building the informer until
// the handler was told of every object and the informer stopped again), and watch events
// applied per second with every object cached (nanoseconds per event, from the first change in
// the source until the handler was told of the last).
var InformerCases = []Case{
	{"informer_initial_sync", "ms", initialSync},
	{"informer_watch_event", "ns/event", watchEvents},
}

func initialSync(d *Data, s Settings) (float64, error) {
	source := filledSource(d.N)
	var failed error
	ns := measure(s.withSamples(10), timed(func() {
		informer := newInformer(source)
		count := newCounter()
		if _, err := informer.AddEventHandler(count.handler()); err != nil {
			failed = err
			return
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { informer.Run(stop); close(done) }()
		count.wait(int64(d.N))
		if !cache.WaitForCacheSync(stop, informer.HasSynced) {
			failed = fmt.Errorf("the informer did not sync")
		}
		if n := len(informer.GetIndexer().ListKeys()); n != d.N {
			failed = fmt.Errorf("the informer holds %d objects, want %d", n, d.N)
		}
		close(stop)
		<-done
	}))
	return ns / 1e6, failed
}

func watchEvents(d *Data, s Settings) (float64, error) {
	source := filledSource(d.N)
	informer := newInformer(source)
	count := newCounter()
	if _, err := informer.AddEventHandler(count.handler()); err != nil {
		return 0, err
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { informer.Run(stop); close(done) }()
	defer func() { close(stop); <-done }()
	if !cache.WaitForCacheSync(stop, informer.HasSynced) {
		return 0, fmt.Errorf("the informer did not sync")
	}
	events := InformerEvents
	if events > d.N {
		events = d.N
	}
	told := int64(d.N)
	count.wait(told)
	round := 0
	var last *Pod
	ns := measure(s, func(iters int) time.Duration {
		var total time.Duration
		for k := 0; k < iters; k++ {
			round++
			told += int64(events)
			// Modify `events` distinct objects, each moving to another node.
			pods := make([]*Pod, events)
			for j := range pods {
				i := (round*events + j*7) % d.N
				pods[j] = newPod(i, i+round)
			}
			start := time.Now()
			for _, p := range pods {
				source.put(p)
			}
			count.wait(told)
			total += time.Since(start)
			last = pods[len(pods)-1]
		}
		return total
	})
	got, ok, err := informer.GetIndexer().GetByKey(last.Namespace + "/" + last.Name)
	if err != nil || !ok || got.(*Pod) != last {
		return 0, fmt.Errorf("the informer does not hold the last change (%v)", err)
	}
	byNode, err := informer.GetIndexer().ByIndex("node", last.Node)
	found := false
	for _, x := range byNode {
		found = found || x.(*Pod) == last
	}
	if err != nil || !found {
		return 0, fmt.Errorf("the node index misses the last change (%v)", err)
	}
	return ns / float64(events), nil
}
