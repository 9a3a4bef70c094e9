# Build: docker build -t rolekeeper .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags=-s -o /rolekeeper .

FROM gcr.io/distroless/static:nonroot
COPY --from=build /rolekeeper /rolekeeper
USER 65532:65532
ENTRYPOINT ["/rolekeeper"]
