package keepalived

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// ymap builds a YAML mapping whose values carry comments.
type ymap struct{ n *yaml.Node }

func newMap() ymap { return ymap{&yaml.Node{Kind: yaml.MappingNode}} }

func (m ymap) set(key string, val any, comment string) {
	k := &yaml.Node{Kind: yaml.ScalarNode, Value: key}
	var v *yaml.Node
	switch x := val.(type) {
	case ymap:
		v = x.n
		k.LineComment = comment
	case *yaml.Node:
		v = x
		k.LineComment = comment
	default:
		v = &yaml.Node{}
		if err := v.Encode(val); err != nil {
			panic(err) // only strings, numbers, bools and slices of them come here
		}
		if v.Kind == yaml.ScalarNode {
			v.LineComment = comment
		} else {
			k.LineComment = comment
		}
	}
	m.n.Content = append(m.n.Content, k, v)
}

func seq() *yaml.Node { return &yaml.Node{Kind: yaml.SequenceNode} }

func from(s *Stmt, what string) string {
	if s == nil {
		return what
	}
	return what + " (" + s.Where() + ")"
}

// duration writes d as an operator would: 60s, 100ms, 1.5s.
func duration(d time.Duration) string {
	if d >= time.Second && d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}
