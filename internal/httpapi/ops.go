package httpapi

import (
	"net/http"
)

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	respond(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.svc.Store().Ping(r.Context()); err != nil {
		s.log.WarnContext(r.Context(), "store not reachable", "err", err)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":{"code":"UNAVAILABLE","message":"store not reachable"},"meta":{"request_id":"` + requestID(r.Context()) + `"}}` + "\n"))
		return
	}
	respond(w, r, http.StatusOK, map[string]string{"status": "ready"})
}
