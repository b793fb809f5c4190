@echo off
rem Start the vending machine controller on Windows and open the web page.
rem Options are passed to the server, e.g.: start.bat --no-simulator
setlocal
cd /d "%~dp0"

if exist "venv\Scripts\python.exe" goto run
echo The virtual environment is missing: run setup.bat first.
pause
exit /b 1

:run
set "PORT=5000"
if defined VENDING_PORT set "PORT=%VENDING_PORT%"
rem Open the browser once the server has had a moment to start; runs beside the server.
start "" /b "venv\Scripts\python.exe" -c "import time, webbrowser; time.sleep(3); webbrowser.open('http://localhost:%PORT%/')"
"venv\Scripts\python.exe" src\app.py %*
set "RC=%errorlevel%"
rem Keep the window open after an error so its message can be read.
if not "%RC%"=="0" pause
exit /b %RC%
