package keepalived

import (
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// convertScript turns a vrrp_script into a health check: curl of a URL
// becomes an http check, anything else an exec check.
func convertScript(sc *Script) (ymap, []Note) {
	var notes []Note
	m := newMap()
	m.n.LineComment = from(sc.At, "vrrp_script "+sc.Name)
	m.set("name", sc.Name, "")
	argv := splitCommand(sc.Script.Text)
	url, insecure := curlURL(argv)
	if url != "" && !curlFails(argv) {
		notes = append(notes, Note{Where: sc.Script.At.Where(), What: "vrrp_script " + sc.Name + ": curl without -f passes on any HTTP answer (a 500 too) in keepalived; garpd's http check fails on a status outside 2xx"})
	}
	tcp, udp := devTCP(sc.Script.Text)
	switch {
	case tcp != "":
		m.set("tcp", tcp, from(sc.Script.At, "bash's /dev/tcp: a TCP connect"))
	case udp:
		notes = append(notes, Note{Where: sc.Script.At.Where(), What: "vrrp_script " + sc.Name + ": bash's /dev/udp sends a datagram and never fails on a closed port; garpd has no udp check: it is an exec check of the same command under bash"})
		m.set("exec", []string{"/bin/bash", "-c", sc.Script.Text}, from(sc.Script.At, "script"))
	case url != "":
		m.set("http", url, from(sc.Script.At, "curl"))
		if insecure {
			m.set("insecure", true, "curl -k")
		}
	case strings.ContainsAny(sc.Script.Text, "|&;<>()$`"):
		// Shell syntax: a shell's words, not a program's.
		m.set("exec", []string{"/bin/sh", "-c", sc.Script.Text}, from(sc.Script.At, "script, under sh: it is shell syntax"))
	default:
		m.set("exec", argv, from(sc.Script.At, "script"))
	}
	interval := sc.Interval
	if interval < 100*time.Millisecond {
		interval = 100 * time.Millisecond
	}
	m.set("interval", duration(interval), "interval")
	timeout := sc.Timeout
	if timeout == 0 || timeout > interval {
		timeout = interval
	}
	m.set("timeout", duration(timeout), "timeout (at most the interval)")
	m.set("fall", sc.Fall, "fall")
	m.set("rise", sc.Rise, "rise")
	return m, notes
}

// devTCPLine is a script that only opens bash's /dev/tcp/HOST/PORT (or
// /dev/udp), bare or under bash -c / sh -c: "</dev/tcp/192.0.2.1/80",
// "bash -c 'cat < /dev/tcp/127.0.0.1/6443'", "echo > /dev/tcp/h/p".
var devTCPLine = regexp.MustCompile(`^\s*(?:(?:/usr)?(?:/bin/)?(?:ba)?sh\s+-c\s+)?['"]?\s*(?:(?:cat|echo|:|true|exec)\s*)?[<>]\s*/dev/(tcp|udp)/(\[[^\]]+\]|[^/\s'"]+)/([0-9]{1,5})\s*['"]?\s*$`)

// devTCP is the HOST:PORT of a script that only connects to bash's
// /dev/tcp (a TCP check, as ipfailover's own), and whether it is /dev/udp
// instead.
func devTCP(script string) (tcp string, udp bool) {
	m := devTCPLine.FindStringSubmatch(script)
	if m == nil {
		return "", false
	}
	if m[1] == "udp" {
		return "", true
	}
	return net.JoinHostPort(strings.Trim(m[2], "[]"), m[3]), false
}

// splitCommand splits a script line as a shell would for simple words and
// single or double quotes.
func splitCommand(s string) []string {
	var out []string
	var cur strings.Builder
	in, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// curlURL is the URL a plain curl command fetches, and whether it skips
// TLS verification; "" when the command is not one curl of a URL.
func curlURL(argv []string) (string, bool) {
	if len(argv) == 0 || filepath.Base(argv[0]) != "curl" {
		return "", false
	}
	url, insecure := "", false
	for _, a := range argv[1:] {
		switch {
		case a == "-k" || a == "--insecure":
			insecure = true
		case strings.HasPrefix(a, "http://") || strings.HasPrefix(a, "https://"):
			if url != "" {
				return "", false
			}
			url = a
		case strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.Contains(a[1:], "k"):
			insecure = true // -sk, -fsSk
		}
	}
	return url, insecure
}

// curlFails reports whether a curl command fails on an HTTP error (-f,
// --fail, --fail-with-body, or -f among short flags such as -sf).
func curlFails(argv []string) bool {
	for _, a := range argv[1:] {
		if a == "--fail" || a == "--fail-with-body" || (strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.Contains(a[1:], "f")) {
			return true
		}
	}
	return false
}
