package bench

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// mediaTimes are the sums and counts of the node's media store
// histograms gonets_media_{put,chunk,complete}_seconds, keyed
// "put_sum", "put_count", ...; nil when they could not be read.
type mediaTimes map[string]float64

// mediaTimes reads the media store's times from the metrics endpoint of
// a node the bench started.
func (t *target) mediaTimes(ctx context.Context) mediaTimes {
	if t.httpURL == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.httpURL+"/metrics", nil)
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	mt := mediaTimes{}
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		name, val, ok := strings.Cut(lines.Text(), " ")
		if !ok || !strings.HasPrefix(name, "gonets_media_") {
			continue
		}
		k := strings.Replace(strings.TrimPrefix(name, "gonets_media_"), "_seconds_", "_", 1)
		switch k {
		case "put_sum", "put_count", "chunk_sum", "chunk_count", "complete_sum", "complete_count":
			if v, err := strconv.ParseFloat(val, 64); err == nil {
				mt[k] = v
			}
		}
	}
	if lines.Err() != nil {
		return nil
	}
	return mt
}
