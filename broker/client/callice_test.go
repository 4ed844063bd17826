package client_test

import (
	"slices"
	"testing"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
)

// TestCallInfoICEServers checks that the SDK hands out the ICE servers of
// the node's CallInfo.
func TestCallInfoICEServers(t *testing.T) {
	turn := broker.ICEServer{URLs: []string{"turn:192.0.2.1:3478?transport=udp", "turn:192.0.2.1:3478?transport=tcp"}, Username: "99:1", Credential: "pw"}
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{
		Calls:          brokertest.NewCallMedia(),
		CallICEServers: func(uint64) []broker.ICEServer { return []broker.ICEServer{turn} },
	}})
	alice, bob := dial(t, n, "", 1, 1, client.Options{}), dial(t, n, "", 2, 1, client.Options{})
	for _, c := range []*client.Client{alice, bob} {
		waitFor(t, c, client.EventConnected)
	}
	info, err := alice.StartCall(ctxT(t), directChat(t, alice, bob), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.ICEServers) != 1 || !slices.Equal(info.ICEServers[0].URLs, turn.URLs) ||
		info.ICEServers[0].Username != turn.Username || info.ICEServers[0].Credential != turn.Credential {
		t.Fatalf("ice servers: %+v", info.ICEServers)
	}
}
