// Drives faultline with Toxiproxy's own Go client (github.com/Shopify/toxiproxy/v2/client, 2.12)
// and checks each call's effect on Redis traffic and Toxiproxy's exact error strings. Run by
// tests/integration/toxiproxy_go_client_test.cpp, built in GOPATH mode with Debian's golang-go:
//
//	GOPATH=<tests/clients/toxiproxy-go/gopath> GO111MODULE=off go build -o compat ./compat
//	FAULTLINE_API=127.0.0.1:8474 REDIS_UPSTREAM=127.0.0.1:6379 ./compat
//
// Prints one line per step and "compat: OK" at the end; exits 1 at the first failure.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
)

var api, upstream string

func step(format string, args ...interface{}) {
	fmt.Printf("compat: "+format+"\n", args...)
}

func fail(format string, args ...interface{}) {
	fmt.Printf("compat: FAILED: "+format+"\n", args...)
	os.Exit(1)
}

func check(cond bool, format string, args ...interface{}) {
	if !cond {
		fail(format, args...)
	}
}

func must(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

// The error's text must be exactly want (Toxiproxy's wording through its client's wrappers).
// expectErrorPrefix: faultline adds which toxic to a 409's text after Toxiproxy's (docs/api.md,
// "Differences from Toxiproxy"); clients compare the status and the prefix.
func expectErrorPrefix(err error, want, what string) {
	if err == nil {
		fail("%s: expected an error starting %q, got none", what, want)
	}
	if !strings.HasPrefix(err.Error(), want) {
		fail("%s: expected an error starting\n  %q\ngot\n  %q", what, want, err.Error())
	}
}

func expectError(err error, want, what string) {
	if err == nil {
		fail("%s: expected the error %q, got none", what, want)
	}
	if err.Error() != want {
		fail("%s: expected the error\n  %q\ngot\n  %q", what, want, err.Error())
	}
}

type pingResult struct {
	ms      int64
	reply   string
	err     error
	timeout bool
}

// One PING on a new connection.
func ping(listen string, timeout time.Duration) pingResult {
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", listen, timeout)
	if err != nil {
		return pingResult{ms: time.Since(t0).Milliseconds(), err: err}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return pingResult{ms: time.Since(t0).Milliseconds(), err: err}
	}
	buf := make([]byte, 64)
	got := ""
	for !strings.Contains(got, "\r\n") {
		n, err := c.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return pingResult{ms: time.Since(t0).Milliseconds(), timeout: true}
			}
			return pingResult{ms: time.Since(t0).Milliseconds(), err: err}
		}
		got += string(buf[:n])
	}
	return pingResult{ms: time.Since(t0).Milliseconds(), reply: got}
}

func expectPong(listen string, maxMs int64) int64 {
	r := ping(listen, 3*time.Second)
	check(r.reply == "+PONG\r\n", "PING through %s: %+v", listen, r)
	if maxMs > 0 {
		check(r.ms < maxMs, "PING through %s took %d ms, expected < %d", listen, r.ms, maxMs)
	}
	return r.ms
}

func expectRefused(listen string) {
	r := ping(listen, 2*time.Second)
	check(r.err != nil && strings.Contains(r.err.Error(), "connection refused"),
		"connect to %s: expected refused, got %+v", listen, r)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err, "free port")
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func main() {
	api = os.Getenv("FAULTLINE_API")
	upstream = os.Getenv("REDIS_UPSTREAM")
	check(api != "" && upstream != "", "FAULTLINE_API and REDIS_UPSTREAM must be set")
	client := toxiproxy.NewClient(api)

	version, err := client.Version()
	must(err, "version")
	check(strings.Contains(string(version), `"version"`), "version: %s", version)
	step("server version %s", strings.TrimSpace(string(version)))

	// Every answer carries hlog's request id (the client does not expose headers).
	resp, err := http.Get("http://" + api + "/proxies/no-such-proxy")
	must(err, "raw GET")
	resp.Body.Close()
	id := resp.Header.Get("X-Toxiproxy-Request-Id")
	check(regexp.MustCompile(`^[0-9a-v]{20}$`).MatchString(id), "X-Toxiproxy-Request-Id: %q", id)
	step("request id %s", id)

	// Create: the listen address reads back as bound.
	port := freePort()
	proxy, err := client.CreateProxy("gocompat", "localhost:"+strconv.Itoa(port), upstream)
	must(err, "CreateProxy")
	listen := proxy.Listen
	check(listen == "127.0.0.1:"+strconv.Itoa(port), "listen reads back as bound: %s", listen)
	check(proxy.Enabled, "created proxy is enabled")
	base := expectPong(listen, 500)
	step("proxy created on %s, PING %d ms", listen, base)
	zero, err := client.CreateProxy("gozero", "127.0.0.1:0", upstream)
	must(err, "CreateProxy on port 0")
	check(!strings.HasSuffix(zero.Listen, ":0"), "port 0 reads back as the port picked: %s", zero.Listen)
	expectPong(zero.Listen, 500)
	must(zero.Delete(), "Delete")

	// Errors, in Toxiproxy's words.
	_, err = client.CreateProxy("gocompat", "127.0.0.1:0", upstream)
	expectError(err, "Create: HTTP 409: proxy already exists", "duplicate proxy")
	_, err = client.CreateProxy("gotaken", upstream, upstream)
	expectError(err, "Create: HTTP 500: listen tcp "+upstream+": bind: address already in use",
		"port in use")
	_, err = client.CreateProxy("", "127.0.0.1:0", upstream)
	expectError(err, "Create: HTTP 400: missing required field: name", "no name")
	_, err = client.Proxy("no-such-proxy")
	expectError(err, "HTTP 404: proxy not found", "missing proxy")
	step("proxy errors match Toxiproxy's")

	// Toxics: add, update, remove.
	lat, err := client.AddToxic(&toxiproxy.ToxicOptions{ProxyName: "gocompat", ToxicType: "latency",
		Toxicity: 1, Attributes: toxiproxy.Attributes{"latency": 300}})
	must(err, "AddToxic latency")
	check(lat.Name == "latency_downstream" && lat.Stream == "downstream", "default name and stream: %+v", lat)
	check(lat.Attributes["latency"] == float64(300) && lat.Attributes["jitter"] == float64(0),
		"attributes echoed: %v", lat.Attributes)
	ms := ping(listen, 3*time.Second).ms
	check(ms >= 290, "PING with 300 ms latency took %d ms", ms)
	step("latency toxic: PING %d ms", ms)
	_, err = client.AddToxic(&toxiproxy.ToxicOptions{ProxyName: "gocompat", ToxicType: "latency",
		Toxicity: 1})
	expectErrorPrefix(err, "failed to add toxic to proxy gocompat: AddToxic: HTTP 409: toxic already exists",
		"duplicate toxic")
	_, err = client.AddToxic(&toxiproxy.ToxicOptions{ProxyName: "gocompat", ToxicType: "lag",
		Toxicity: 1})
	expectError(err, "failed to add toxic to proxy gocompat: AddToxic: HTTP 400: invalid toxic type",
		"unknown type")
	_, err = client.AddToxic(&toxiproxy.ToxicOptions{ProxyName: "gocompat", ToxicType: "latency",
		ToxicName: "sideways", Stream: "sideways", Toxicity: 1})
	expectError(err, "failed to add toxic to proxy gocompat: AddToxic: HTTP 400: stream was invalid, "+
		"can be either upstream or downstream", "bad stream")
	_, err = client.AddToxic(&toxiproxy.ToxicOptions{ProxyName: "nope", ToxicType: "latency"})
	expectError(err, "failed to retrieve proxy with name `nope`: HTTP 404: proxy not found",
		"toxic on a missing proxy")
	// faultline's own refusal (Toxiproxy ignores the name): the name and the type's names.
	_, err = client.AddToxic(&toxiproxy.ToxicOptions{ProxyName: "gocompat", ToxicType: "latency",
		ToxicName: "typo", Toxicity: 1, Attributes: toxiproxy.Attributes{"latncy": 300}})
	expectError(err, "failed to add toxic to proxy gocompat: AddToxic: HTTP 400: bad request body: "+
		"unknown attribute 'latncy': latency takes latency, jitter", "unknown attribute")
	step("toxic errors match Toxiproxy's")

	up, err := client.UpdateToxic(&toxiproxy.ToxicOptions{ProxyName: "gocompat",
		ToxicName: "latency_downstream", Toxicity: -1, Attributes: toxiproxy.Attributes{"latency": 400}})
	must(err, "UpdateToxic")
	check(up.Attributes["latency"] == float64(400) && up.Attributes["jitter"] == float64(0) &&
		up.Toxicity == 1, "update merged: %+v", up)
	ms = expectPong(listen, 0)
	check(ms >= 390, "PING with 400 ms latency took %d ms", ms)
	_, err = client.UpdateToxic(&toxiproxy.ToxicOptions{ProxyName: "gocompat", ToxicName: "nope",
		Toxicity: -1})
	expectError(err, "failed to update toxic 'nope' of proxy 'gocompat': HTTP 404: toxic not found",
		"update a missing toxic")
	must(client.RemoveToxic(&toxiproxy.ToxicOptions{ProxyName: "gocompat",
		ToxicName: "latency_downstream"}), "RemoveToxic")
	ms = expectPong(listen, 250)
	step("latency updated and removed: PING %d ms", ms)
	err = client.RemoveToxic(&toxiproxy.ToxicOptions{ProxyName: "gocompat", ToxicName: "nope"})
	expectError(err, "failed to remove toxic 'nope' from proxy 'gocompat': HTTP 404: toxic not found",
		"remove a missing toxic")

	// noop, and a slicer whose variation equals its average (Toxiproxy accepts both).
	p, err := client.Proxy("gocompat")
	must(err, "Proxy")
	_, err = p.AddToxic("", "noop", "upstream", 1, nil)
	must(err, "AddToxic noop")
	_, err = p.AddToxic("", "slicer", "", 1, toxiproxy.Attributes{"average_size": 4,
		"size_variation": 4, "delay": 0})
	must(err, "AddToxic slicer")
	expectPong(listen, 500)
	toxics, err := p.Toxics()
	must(err, "Toxics")
	check(len(toxics) == 2 && toxics[0].Name == "noop_upstream" && toxics[1].Name == "slicer_downstream",
		"toxics listed in order: %+v", toxics)
	step("noop and slicer: PING answered")

	// Disable and enable through Save(), which posts the whole proxy back, toxics included.
	must(p.Disable(), "Disable")
	check(!p.Enabled, "disabled")
	expectRefused(listen)
	must(p.Enable(), "Enable")
	check(p.Enabled && p.Listen == listen, "enabled again on %s", p.Listen)
	expectPong(listen, 500)
	step("disabled: refused; enabled again on the same address")

	// Populate: created or replaced in order; a failure keeps what was done before it.
	pops, err := client.Populate([]toxiproxy.Proxy{
		{Name: "gopop1", Listen: "127.0.0.1:0", Upstream: upstream, Enabled: true},
		{Name: "gocompat", Listen: listen, Upstream: upstream, Enabled: true},
	})
	must(err, "Populate")
	check(len(pops) == 2 && pops[0].Name == "gopop1" && pops[1].Name == "gocompat",
		"populate answers in order: %+v", pops)
	check(len(pops[1].ActiveToxics) == 2, "an unchanged proxy is kept, toxics and all: %+v", pops[1])
	expectPong(pops[0].Listen, 500)
	_, err = client.Populate([]toxiproxy.Proxy{
		{Name: "gopop2", Listen: "127.0.0.1:0", Upstream: upstream, Enabled: true},
		{Name: "gopop3", Listen: upstream, Upstream: upstream, Enabled: true},
		{Name: "gopop4", Listen: "127.0.0.1:0", Upstream: upstream, Enabled: true},
	})
	expectError(err, "Populate: HTTP 500: listen tcp "+upstream+": bind: address already in use",
		"populate onto a port in use")
	all, err := client.Proxies()
	must(err, "Proxies")
	_, has2 := all["gopop2"]
	_, has3 := all["gopop3"]
	_, has4 := all["gopop4"]
	check(has2 && !has3 && !has4, "after a failed populate: %v", keys(all))
	_, err = client.Populate([]toxiproxy.Proxy{
		{Name: "gopop5", Listen: "127.0.0.1:0", Upstream: upstream, Enabled: true},
		{Name: "gopop6", Listen: "127.0.0.1:0"},
	})
	expectError(err, "Populate: HTTP 400: missing required field: upstream at proxy 2",
		"populate without an upstream")
	all, err = client.Proxies()
	must(err, "Proxies")
	_, has5 := all["gopop5"]
	check(!has5, "nothing created when an entry lacks its upstream: %v", keys(all))
	step("populate: %v", keys(all))

	// Reset: every proxy enabled, no toxics.
	must(all["gopop1"].Disable(), "Disable gopop1")
	must(client.ResetState(), "ResetState")
	all, err = client.Proxies()
	must(err, "Proxies")
	for name, p := range all {
		check(p.Enabled && len(p.ActiveToxics) == 0, "%s after reset: %+v", name, p)
	}
	expectPong(listen, 250)
	expectPong(all["gopop1"].Listen, 500)
	step("reset: every proxy enabled, no toxics")

	for _, name := range []string{"gocompat", "gopop1", "gopop2"} {
		must(all[name].Delete(), "Delete "+name)
	}
	_, err = client.Proxy("gocompat")
	expectError(err, "HTTP 404: proxy not found", "removed proxy")
	expectRefused(listen)
	step("proxies removed")
	fmt.Println("compat: OK")
}

func keys(m map[string]*toxiproxy.Proxy) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	return out
}
