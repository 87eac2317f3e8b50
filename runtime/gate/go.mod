module conch.dev/gate

go 1.24
