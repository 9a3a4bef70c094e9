# Build: docker build -t rolekeeper .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# cgo, linked statically: IAM Roles Anywhere's signing library (rolesanywhere-credential-helper)
# links PKCS #11 support through cgo. netgo and osusergo keep DNS and user lookups in pure Go.
RUN CGO_ENABLED=1 go build -trimpath -tags netgo,osusergo -ldflags='-s -linkmode external -extldflags "-static"' -o /rolekeeper .

FROM gcr.io/distroless/static:nonroot
COPY --from=build /rolekeeper /rolekeeper
USER 65532:65532
ENTRYPOINT ["/rolekeeper"]
