module example.com/app

go 1.19

require (
	example.com/greet v1.2.3
	example.com/old v1.0.0
	example.com/local v0.0.0
)

replace example.com/old => example.com/fork v1.0.1

replace example.com/local => ./local
