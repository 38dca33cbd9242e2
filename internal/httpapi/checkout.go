package httpapi

import (
	"io"
	"net/http"

	"github.com/go-chi/chi/v5"

	"rdev.dev/rdev/internal/service"
)

func (s *Server) createCheckout(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	setTarget(r, "project/"+id)
	var req service.CheckoutRequest
	if err := decode(w, r, &req); err != nil {
		s.respondError(w, r, err, "")
		return
	}
	c, err := s.svc.CreateCheckout(r.Context(), caller(r.Context()), id, req)
	if err != nil {
		s.respondError(w, r, err, "Failed to create checkout")
		return
	}
	setTarget(r, "checkout/"+c.ID)
	respond(w, r, http.StatusCreated, c)
}

func (s *Server) listCheckouts(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	page, err := pageParams(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	cs, next, err := s.svc.ListCheckouts(r.Context(), caller(r.Context()), id, page)
	if err != nil {
		s.respondError(w, r, err, "Failed to list checkouts")
		return
	}
	respond(w, r, http.StatusOK, listBody{"checkouts": cs}.next(next))
}

func (s *Server) getCheckout(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	c, err := s.svc.GetCheckout(r.Context(), caller(r.Context()), id, chi.URLParam(r, "cid"))
	if err != nil {
		s.respondError(w, r, err, "Failed to get checkout")
		return
	}
	respond(w, r, http.StatusOK, c)
}

func (s *Server) checkinCheckout(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	cid := chi.URLParam(r, "cid")
	setTarget(r, "checkout/"+cid)
	var req service.CheckinRequest
	if err := decodeOptional(w, r, &req); err != nil {
		s.respondError(w, r, err, "")
		return
	}
	res, err := s.svc.CheckinCheckout(r.Context(), caller(r.Context()), id, cid, req)
	if err != nil {
		s.respondError(w, r, err, "Failed to check in checkout")
		return
	}
	respond(w, r, http.StatusOK, res)
}

// decodeOptional is decode for bodies that may be absent: an empty body
// leaves v as it is.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	var first [1]byte
	n, err := io.ReadFull(body, first[:])
	if n == 0 && (err == io.EOF || err == io.ErrUnexpectedEOF) {
		return nil
	}
	return decodeJSON(io.MultiReader(bytesReader(first[:n]), body), v)
}
